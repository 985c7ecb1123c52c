// kservecheck runs every InferenceService in a stream of rendered manifests through KServe's own
// code, in both of KServe's deployment modes, and judges the result with the component that judges
// it in a cluster:
//
//   - KServe's defaulting and validating webhooks (InferenceServiceDefaulter, InferenceServiceValidator);
//   - KServe's predictor reconciler, which turns the predictor into a Knative Service (Serverless) or a
//     Deployment (RawDeployment/Standard), against an in-memory API server (controller-runtime's fake client);
//   - Knative Serving's own defaulting and validation of that Service, with Knative's default feature flags
//     (what `kubectl apply` of the Service would meet in a cluster where nobody changed config-features);
//   - KServe's pod mutating webhook (storage initializer: the pvc:// model mount) on the pod each mode makes.
//
// The pods KServe would create are written to -pods as YAML, for the restricted Pod Security check
// (ci/psacheck). One line per InferenceService and mode: "ok ..." or the errors; exit 1 on any error.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"knative.dev/pkg/apis"
	knservingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/kserve/kserve/pkg/apis/serving/v1alpha1"
	"github.com/kserve/kserve/pkg/apis/serving/v1beta1"
	"github.com/kserve/kserve/pkg/constants"
	"github.com/kserve/kserve/pkg/controller/v1beta1/inferenceservice/components"
	"github.com/kserve/kserve/pkg/webhook/admission/pod"
)

// The two deployment modes KServe's config can default to: Knative (Serverless) and Standard (RawDeployment).
var modes = []constants.DeploymentModeType{constants.LegacyServerless, constants.LegacyRawDeployment}

func main() {
	configPath := flag.String("config", "", "KServe's inferenceservice-config ConfigMap (config/configmap/inferenceservice.yaml of the kserve module)")
	podsPath := flag.String("pods", "", "write the pods KServe would create here (YAML)")
	flag.Parse()
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "kservecheck: -config is required")
		os.Exit(2)
	}
	configMap, err := readConfigMap(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kservecheck:", err)
		os.Exit(2)
	}
	docs, err := readInferenceServices(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kservecheck:", err)
		os.Exit(2)
	}
	var pods []string
	failed := false
	for _, doc := range docs {
		for _, mode := range modes {
			made, errs := check(doc, mode, configMap)
			name := fmt.Sprintf("%s/%s (%s)", doc.Namespace, doc.Name, mode)
			if len(errs) > 0 {
				failed = true
				for _, e := range errs {
					fmt.Printf("%s: %s\n", name, strings.ReplaceAll(e.Error(), "\n", "; "))
				}
				continue
			}
			fmt.Printf("ok %s\n", name)
			for _, p := range made {
				out, _ := yaml.Marshal(p)
				pods = append(pods, string(out))
			}
		}
	}
	if *podsPath != "" {
		if err := os.WriteFile(*podsPath, []byte(strings.Join(pods, "---\n")), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "kservecheck:", err)
			os.Exit(2)
		}
	}
	if len(docs) == 0 {
		fmt.Println("no InferenceService in the input")
	}
	if failed {
		os.Exit(1)
	}
}

func readConfigMap(path string) (*corev1.ConfigMap, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	decoder := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(string(raw)), 4096)
	for {
		cm := &corev1.ConfigMap{}
		if err := decoder.Decode(cm); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s holds no %s ConfigMap", path, constants.InferenceServiceConfigMapName)
			}
			return nil, err
		}
		if cm.Kind == "ConfigMap" && cm.Name == constants.InferenceServiceConfigMapName {
			cm.Namespace = constants.KServeNamespace
			return cm, nil
		}
	}
}

func readInferenceServices(in io.Reader) ([]*v1beta1.InferenceService, error) {
	decoder := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(in), 4096)
	var found []*v1beta1.InferenceService
	for {
		var raw map[string]interface{}
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return found, nil
			}
			return nil, err
		}
		if raw["kind"] != "InferenceService" {
			continue
		}
		data, _ := json.Marshal(raw)
		isvc := &v1beta1.InferenceService{}
		// Strict: a field KServe's types do not know is a field KServe would drop.
		if err := yaml.UnmarshalStrict(data, isvc); err != nil {
			return nil, fmt.Errorf("InferenceService: %w", err)
		}
		found = append(found, isvc)
	}
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, v1beta1.AddToScheme, v1alpha1.AddToScheme, knservingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// check runs one InferenceService through KServe in one mode; it returns the pods that mode makes.
func check(in *v1beta1.InferenceService, mode constants.DeploymentModeType, configMap *corev1.ConfigMap) ([]*corev1.Pod, []error) {
	ctx := context.Background()
	isvc := in.DeepCopy()
	if isvc.Namespace == "" {
		isvc.Namespace = "default"
	}
	if isvc.Annotations == nil {
		isvc.Annotations = map[string]string{}
	}
	if set, ok := isvc.Annotations[constants.DeploymentMode]; ok && set != string(mode) {
		return nil, nil // the chart pinned the other mode
	}
	isvc.Annotations[constants.DeploymentMode] = string(mode)

	// KServe's mutating and validating webhooks.
	isvcConfig, err := v1beta1.NewInferenceServicesConfig(configMap)
	if err != nil {
		return nil, []error{err}
	}
	deployConfig, err := v1beta1.NewDeployConfig(configMap)
	if err != nil {
		return nil, []error{err}
	}
	securityConfig, err := v1beta1.NewSecurityConfig(configMap)
	if err != nil {
		return nil, []error{err}
	}
	isvc.DefaultInferenceService(isvcConfig, deployConfig, securityConfig, nil)
	if _, err := (&v1beta1.InferenceServiceValidator{}).ValidateCreate(ctx, isvc); err != nil {
		return nil, []error{fmt.Errorf("KServe's InferenceService webhook: %w", err)}
	}

	// KServe's predictor reconciler against an in-memory API server.
	scheme := newScheme()
	isvc.Generation = 1
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(isvc).WithStatusSubresource(isvc).Build()
	clientset := kubefake.NewSimpleClientset(configMap)
	deploymentMode := mode
	if mode == constants.LegacyRawDeployment {
		deploymentMode = constants.Standard
	}
	predictor := components.NewPredictor(c, clientset, scheme, isvcConfig, deploymentMode)
	if _, err := predictor.Reconcile(ctx, isvc); err != nil {
		return nil, []error{fmt.Errorf("KServe's predictor reconciler: %w", err)}
	}

	var made []*corev1.Pod
	if mode == constants.LegacyServerless {
		services := &knservingv1.ServiceList{}
		if err := c.List(ctx, services, client.InNamespace(isvc.Namespace)); err != nil || len(services.Items) == 0 {
			return nil, []error{fmt.Errorf("KServe made no Knative Service (%v)", err)}
		}
		var errs []error
		for i := range services.Items {
			ksvc := services.Items[i].DeepCopy()
			// What Knative's webhook does on create, with config-features and config-defaults at their defaults.
			created := apis.WithinCreate(ctx)
			ksvc.SetDefaults(created)
			if fieldErr := ksvc.Validate(created); fieldErr != nil {
				errs = append(errs, fmt.Errorf("Knative Serving's validation of Service %s: %s", ksvc.Name, fieldErr.Error()))
				continue
			}
			template := ksvc.Spec.Template
			made = append(made, &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: ksvc.Name, Namespace: ksvc.Namespace, Labels: template.Labels, Annotations: template.Annotations},
				Spec:       template.Spec.PodSpec,
			})
		}
		if len(errs) > 0 {
			return nil, errs
		}
	} else {
		deployments := &appsv1.DeploymentList{}
		if err := c.List(ctx, deployments, client.InNamespace(isvc.Namespace)); err != nil || len(deployments.Items) == 0 {
			return nil, []error{fmt.Errorf("KServe made no Deployment (%v)", err)}
		}
		for _, d := range deployments.Items {
			made = append(made, &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
				Spec:       d.Spec.Template.Spec,
			})
		}
	}

	// KServe's pod webhook (storage initializer, pvc:// mounts) on each pod.
	mutator := &pod.Mutator{Client: c, Clientset: clientset, Decoder: admission.NewDecoder(scheme)}
	var errs []error
	for i, p := range made {
		mutated, err := mutate(ctx, mutator, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("KServe's pod webhook on %s: %w", p.Name, err))
			continue
		}
		made[i] = mutated
	}
	sort.Slice(made, func(i, j int) bool { return made[i].Name < made[j].Name })
	return made, errs
}

func mutate(ctx context.Context, mutator *pod.Mutator, p *corev1.Pod) (*corev1.Pod, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	resp := mutator.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "kservecheck", Namespace: p.Namespace, Operation: admissionv1.Create,
		Object: runtime.RawExtension{Raw: raw},
	}})
	if !resp.Allowed {
		return nil, fmt.Errorf("refused: %v", resp.Result)
	}
	if len(resp.Patches) == 0 {
		return p, nil
	}
	patchJSON, err := json.Marshal(resp.Patches)
	if err != nil {
		return nil, err
	}
	patch, err := jsonpatch.DecodePatch(patchJSON)
	if err != nil {
		return nil, err
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		return nil, err
	}
	out := &corev1.Pod{}
	if err := json.Unmarshal(patched, out); err != nil {
		return nil, err
	}
	return out, nil
}
