// Command katibcheck runs pieces of Katib v0.19's own code on JSON from stdin, for the tests that
// compare the generator with the component that has the last word:
//
//	katibcheck mutate  --katib-config FILE   Katib's pod mutator (pkg/webhook/v1beta1/pod) on trial pods
//	katibcheck convert                       Katib's Experiment -> suggestion gRPC request conversion
//	katibcheck goptuna                       the goptuna suggestion service's ValidateAlgorithmSettings
//	katibcheck regexp                        Go's regexp.Compile, as Katib compiles metricsFormat filters
//
// Each reads a JSON array of cases and writes a JSON array of results in the same order; a case
// Katib refuses gives {"error": "..."}, never a non-zero exit.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/spf13/viper"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	configv1beta1 "github.com/kubeflow/katib/pkg/apis/config/v1beta1"
	apis "github.com/kubeflow/katib/pkg/apis/controller"
	commonv1beta1 "github.com/kubeflow/katib/pkg/apis/controller/common/v1beta1"
	experimentsv1beta1 "github.com/kubeflow/katib/pkg/apis/controller/experiments/v1beta1"
	suggestionsv1beta1 "github.com/kubeflow/katib/pkg/apis/controller/suggestions/v1beta1"
	trialsv1beta1 "github.com/kubeflow/katib/pkg/apis/controller/trials/v1beta1"
	suggestionapi "github.com/kubeflow/katib/pkg/apis/manager/v1beta1"
	"github.com/kubeflow/katib/pkg/controller.v1beta1/consts"
	"github.com/kubeflow/katib/pkg/controller.v1beta1/experiment/manifest"
	"github.com/kubeflow/katib/pkg/controller.v1beta1/suggestion/suggestionclient"
	"github.com/kubeflow/katib/pkg/controller.v1beta1/util"
	goptuna "github.com/kubeflow/katib/pkg/suggestion/v1beta1/goptuna"
	"github.com/kubeflow/katib/pkg/util/v1beta1/katibconfig"
	podwebhook "github.com/kubeflow/katib/pkg/webhook/v1beta1/pod"
)

type result struct {
	Error  string          `json:"error,omitempty"`
	Groups *int            `json:"groups,omitempty"`
	Pod    *corev1.Pod     `json:"pod,omitempty"`
	Output json.RawMessage `json:"output,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: katibcheck mutate|convert|goptuna|regexp [flags] < cases.json")
		os.Exit(2)
	}
	flags := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	katibConfig := flags.String("katib-config", "", "KatibConfig file (mutate)")
	_ = flags.Parse(os.Args[2:])
	input, err := io.ReadAll(os.Stdin)
	if err == nil {
		var results []result
		results, err = run(os.Args[1], *katibConfig, input)
		if err == nil {
			err = json.NewEncoder(os.Stdout).Encode(results)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "katibcheck:", err)
		os.Exit(2)
	}
}

func run(command, katibConfig string, input []byte) ([]result, error) {
	switch command {
	case "regexp":
		var patterns []string
		if err := json.Unmarshal(input, &patterns); err != nil {
			return nil, err
		}
		out := make([]result, len(patterns))
		for i, p := range patterns {
			// What the webhook and the collectors call (validator.go, file-metricscollector.go).
			re, err := regexp.Compile(p)
			if err != nil {
				out[i].Error = err.Error()
			} else {
				n := re.NumSubexp()
				out[i].Groups = &n
			}
		}
		return out, nil
	case "convert", "goptuna":
		var experiments []experimentsv1beta1.Experiment
		if err := json.Unmarshal(input, &experiments); err != nil {
			return nil, err
		}
		out := make([]result, len(experiments))
		service := goptuna.NewSuggestionService()
		for i := range experiments {
			// The request Katib's suggestion controller sends (suggestionclient.ValidateAlgorithmSettings).
			request := &suggestionapi.ValidateAlgorithmSettingsRequest{
				Experiment: (&suggestionclient.General{}).ConvertExperiment(&experiments[i]),
			}
			if command == "convert" {
				raw, err := protojson.Marshal(request)
				if err != nil {
					return nil, err
				}
				out[i].Output = raw
			} else if _, err := service.ValidateAlgorithmSettings(context.Background(), request); err != nil {
				out[i].Error = err.Error()
			}
		}
		return out, nil
	case "mutate":
		var cases []mutateCase
		if err := json.Unmarshal(input, &cases); err != nil {
			return nil, err
		}
		scheme, err := newScheme(katibConfig)
		if err != nil {
			return nil, err
		}
		out := make([]result, len(cases))
		for i := range cases {
			pod, err := mutate(scheme, katibConfig, &cases[i])
			if err != nil {
				out[i].Error = err.Error()
			} else {
				out[i].Pod = pod
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown command %q", command)
}

// mutateCase is one trial pod: the Experiment it belongs to, the parameter assignments of its Trial,
// and optionally the pod itself (by default, the pod the trial Job's template makes).
type mutateCase struct {
	Experiment  experimentsv1beta1.Experiment       `json:"experiment"`
	Assignments []commonv1beta1.ParameterAssignment `json:"assignments"`
	TrialName   string                              `json:"trialName"`
	Pod         *corev1.Pod                         `json:"pod"`
}

func newScheme(katibConfig string) (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		apis.AddToScheme, configv1beta1.AddToScheme, clientgoscheme.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	// The controller reads init.controller.injectSecurityContext into viper; so does the mutator.
	initConfig, err := katibconfig.GetInitConfigData(scheme, katibConfig)
	if err != nil {
		return nil, err
	}
	viper.Set(consts.ConfigInjectSecurityContext, initConfig.ControllerConfig.InjectSecurityContext)
	return scheme, nil
}

// mutate stores the objects Katib's controllers would have made for one trial (Experiment,
// Suggestion, Trial, its Job, katib-config) in a fake API client and runs the pod webhook's Mutate.
func mutate(scheme *runtime.Scheme, katibConfig string, c *mutateCase) (*corev1.Pod, error) {
	exp := &c.Experiment
	if exp.Namespace == "" {
		exp.Namespace = "default"
	}
	ns := exp.Namespace
	config, err := os.ReadFile(katibConfig)
	if err != nil {
		return nil, err
	}
	configMap := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: consts.KatibConfigMapName, Namespace: consts.DefaultKatibNamespace},
		Data:       map[string]string{consts.LabelKatibConfigTag: string(config)},
	}
	suggestion := &suggestionsv1beta1.Suggestion{
		ObjectMeta: metav1.ObjectMeta{Name: exp.Name, Namespace: ns},
		Spec:       suggestionsv1beta1.SuggestionSpec{Algorithm: exp.Spec.Algorithm, EarlyStopping: exp.Spec.EarlyStopping},
	}
	kube := fake.NewClientBuilder().WithScheme(scheme).WithObjects(configMap, exp.DeepCopy(), suggestion).Build()

	trialName := c.TrialName
	if trialName == "" {
		trialName = exp.Name + "-trial"
	}
	// The Trial fields Katib's experiment controller copies from the Experiment (getTrialInstance).
	trial := &trialsv1beta1.Trial{ObjectMeta: metav1.ObjectMeta{Name: trialName, Namespace: ns, Labels: util.TrialLabels(exp)}}
	trial.Spec.Objective = exp.Spec.Objective
	trial.Spec.ParameterAssignments = c.Assignments
	if exp.Spec.MetricsCollectorSpec != nil {
		trial.Spec.MetricsCollector = *exp.Spec.MetricsCollectorSpec
	}
	if t := exp.Spec.TrialTemplate; t != nil {
		trial.Spec.PrimaryPodLabels = t.PrimaryPodLabels
		trial.Spec.PrimaryContainerName = t.PrimaryContainerName
	}
	if err := kube.Create(context.TODO(), trial); err != nil {
		return nil, err
	}
	// The trial's Job, made by Katib's own trial-template substitution.
	job, err := manifest.New(kube).GetRunSpecWithHyperParameters(exp, trialName, ns, c.Assignments)
	if err != nil {
		return nil, err
	}
	controller := true
	job.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion: podwebhook.TrialAPIVersion, Kind: podwebhook.TrialKind, Name: trialName, UID: "trial", Controller: &controller,
	}})
	if err := kube.Create(context.TODO(), job); err != nil {
		return nil, err
	}
	pod := c.Pod
	if pod == nil {
		var template corev1.PodTemplateSpec
		raw, found, err := unstructured.NestedMap(job.Object, "spec", "template")
		if err != nil || !found {
			return nil, fmt.Errorf("the trial template has no spec.template: %v", err)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &template); err != nil {
			return nil, err
		}
		pod = &corev1.Pod{ObjectMeta: template.ObjectMeta, Spec: template.Spec}
		pod.GenerateName = trialName + "-"
	}
	pod.Namespace = ns
	if len(pod.OwnerReferences) == 0 {
		pod.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: job.GetAPIVersion(), Kind: job.GetKind(), Name: trialName, UID: "job", Controller: &controller,
		}}
	}
	injector := podwebhook.NewSidecarInjector(kube, admission.NewDecoder(scheme))
	required, err := injector.MutationRequired(pod, ns)
	if err != nil {
		return nil, err
	}
	if !required {
		return pod, nil
	}
	return injector.Mutate(pod, ns)
}
