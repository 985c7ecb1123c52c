// Command katibcheck runs pieces of Katib v0.19's own code on JSON from stdin, for the tests that
// compare the generator with the component that has the last word:
//
//	katibcheck mutate  --katib-config FILE   Katib's pod mutator (pkg/webhook/v1beta1/pod) on trial pods
//	katibcheck convert                       Katib's Experiment -> suggestion gRPC request conversion
//	katibcheck goptuna                       the goptuna suggestion service's ValidateAlgorithmSettings
//	katibcheck regexp                        Go's regexp.Compile, as Katib compiles metricsFormat filters
//	katibcheck resume [-- DRIVER ARGS...]    a suggestion service kept running and one started afresh (a
//	                                         FromVolume restart) on the trials made so far: goptuna in this
//	                                         process, or a Python service through DRIVER (ci/suggestion_run.py)
//
// Each reads a JSON array of cases and writes a JSON array of results in the same order; a case
// Katib refuses gives {"error": "..."}, never a non-zero exit.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"time"

	"github.com/spf13/viper"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
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
	Error  string `json:"error,omitempty"`
	Kept   string `json:"kept,omitempty"`   // resume: the error of the service kept running
	Before string `json:"before,omitempty"` // resume: an error before the restart
	Trials *int   `json:"trials,omitempty"` // resume: the trials the restart request carried
	// resume: the requests the new service process needed to answer (0: none of trials+2 did), and
	// how many of its and the kept service's suggestions repeat a trial that already ran.
	Attempts    *int            `json:"attempts,omitempty"`
	Repeats     *int            `json:"repeats,omitempty"`
	KeptRepeats *int            `json:"keptRepeats,omitempty"`
	Groups      *int            `json:"groups,omitempty"`
	Pod         *corev1.Pod     `json:"pod,omitempty"`
	Output      json.RawMessage `json:"output,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: katibcheck mutate|convert|goptuna|regexp|resume [flags] < cases.json")
		os.Exit(2)
	}
	flags := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	katibConfig := flags.String("katib-config", "", "KatibConfig file (mutate)")
	_ = flags.Parse(os.Args[2:])
	input, err := io.ReadAll(os.Stdin)
	if err == nil {
		var results []result
		results, err = run(os.Args[1], *katibConfig, flags.Args(), input)
		if err == nil {
			err = json.NewEncoder(os.Stdout).Encode(results)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "katibcheck:", err)
		os.Exit(2)
	}
}

func run(command, katibConfig string, driver []string, input []byte) ([]result, error) {
	switch command {
	case "resume":
		quiet := flag.NewFlagSet("klog", flag.ContinueOnError) // goptuna logs every trial
		klog.InitFlags(quiet)
		_ = quiet.Parse([]string{"-logtostderr=false", "-stderrthreshold=FATAL"})
		klog.SetOutput(io.Discard)
		var cases []resumeCase
		if err := json.Unmarshal(input, &cases); err != nil {
			return nil, err
		}
		return resumeAll(cases, driver)
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

// resumeCase is one Experiment searched for Rounds rounds of Requests trials each (or one round per
// entry of RoundRequests, of that many trials), every trial succeeding with its own objective value,
// before Katib restarts the search and asks for RestartRequests trials (default Requests): the raised
// maxTrialCount, at most parallelTrialCount.
type resumeCase struct {
	Experiment      experimentsv1beta1.Experiment `json:"experiment"`
	Requests        int                           `json:"requests"`
	Rounds          int                           `json:"rounds"`
	RoundRequests   []int                         `json:"roundRequests"`
	RestartRequests int                           `json:"restartRequests"`
}

// suggester sends GetSuggestions to the named service instance, started on its first request.
type suggester func(instance string, request *suggestionapi.GetSuggestionsRequest) (*suggestionapi.GetSuggestionsReply, error)

// resumeAll runs each case's search on one service instance, then sends the request Katib sends
// when maxTrialCount is raised both to that instance (LongRunning keeps the service) and to a new
// one (FromVolume starts a new service process; only the Suggestion's status and the PVC remain).
func resumeAll(cases []resumeCase, driver []string) ([]result, error) {
	suggest, stop, err := newSuggester(driver)
	if err != nil {
		return nil, err
	}
	defer stop()
	out := make([]result, len(cases))
	for i := range cases {
		out[i], err = resume(&cases[i], fmt.Sprintf("%d-kept", i), fmt.Sprintf("%d-fresh", i), suggest)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func resume(c *resumeCase, kept, fresh string, suggest suggester) (result, error) {
	exp := c.Experiment.DeepCopy()
	exp.SetDefault() // Katib's defaulting webhook: the metric strategies the observations are read by
	var trials []trialsv1beta1.Trial
	var status []commonv1beta1.AlgorithmSetting // the Suggestion's status.algorithmSettings
	request := func(count int) *suggestionapi.GetSuggestionsRequest {
		// As SyncAssignments builds it: the Suggestion's algorithm settings over the Experiment's.
		filled := exp.DeepCopy()
		for _, s := range status {
			filled.Spec.Algorithm.AlgorithmSettings = setSetting(filled.Spec.Algorithm.AlgorithmSettings, s.Name, s.Value)
		}
		client := &suggestionclient.General{}
		return &suggestionapi.GetSuggestionsRequest{
			Experiment:           client.ConvertExperiment(filled),
			Trials:               client.ConvertTrials(trials),
			CurrentRequestNumber: int32(count),
			TotalRequestNumber:   int32(len(trials) + count),
		}
	}
	counts := c.RoundRequests
	if len(counts) == 0 {
		for range c.Rounds {
			counts = append(counts, c.Requests)
		}
	}
	for round, count := range counts {
		reply, err := ask(suggest, kept, request(count))
		if err != nil {
			return result{Before: fmt.Sprintf("round %d: %v", round, err)}, nil
		}
		for _, a := range reply.ParameterAssignments {
			name := a.TrialName
			if name == "" { // Katib names it <suggestion>-<8 random characters>
				name = fmt.Sprintf("%s-%08d", exp.Name, len(trials))
			}
			trials = append(trials, succeededTrial(exp, name, a, len(trials)))
		}
		for _, s := range reply.GetAlgorithm().GetAlgorithmSettings() { // updateAlgorithmSettings
			status = setSetting(status, s.Name, s.Value)
		}
	}
	n := len(trials)
	out := result{Trials: &n}
	if c.RestartRequests == 0 {
		c.RestartRequests = c.Requests
	}
	restart := request(c.RestartRequests)
	ran := map[string]bool{}
	for _, t := range trials {
		ran[fmt.Sprint(t.Spec.ParameterAssignments)] = true
	}
	repeats := func(reply *suggestionapi.GetSuggestionsReply) *int {
		n := 0
		for _, a := range reply.ParameterAssignments {
			if ran[fmt.Sprint(succeededTrial(exp, "", a, 0).Spec.ParameterAssignments)] {
				n++
			}
		}
		return &n
	}
	if reply, err := ask(suggest, kept, restart); err != nil {
		out.Kept = err.Error()
	} else {
		out.KeptRepeats = repeats(reply)
	}
	// Katib's suggestion controller sends a failed request again, the same, to the same process
	// (the reconciler's error requeues it, waiting longer each time); only a failed settings
	// validation fails the Suggestion.
	attempts := 0
	for attempt := 1; attempt <= len(trials)+2; attempt++ {
		reply, err := ask(suggest, fresh, restart)
		if err == nil {
			attempts, out.Repeats = attempt, repeats(reply)
			break
		}
		if attempt == 1 {
			out.Error = err.Error()
		}
	}
	out.Attempts = &attempts
	return out, nil
}

// ask sends the request and fails the reply as SyncAssignments does.
func ask(suggest suggester, instance string, request *suggestionapi.GetSuggestionsRequest) (*suggestionapi.GetSuggestionsReply, error) {
	reply, err := suggest(instance, request)
	if err == nil && len(reply.GetParameterAssignments()) != int(request.CurrentRequestNumber) {
		err = fmt.Errorf("The response contains unexpected trials")
	}
	return reply, err
}

func setSetting(settings []commonv1beta1.AlgorithmSetting, name, value string) []commonv1beta1.AlgorithmSetting {
	for i := range settings {
		if settings[i].Name == name {
			settings[i].Value = value
			return settings
		}
	}
	return append(settings, commonv1beta1.AlgorithmSetting{Name: name, Value: value})
}

// succeededTrial is the Trial Katib's controllers make for one suggested assignment, after it
// succeeded with an objective value of its own (every metric reported once).
func succeededTrial(
	exp *experimentsv1beta1.Experiment, name string, a *suggestionapi.GetSuggestionsReply_ParameterAssignments, index int,
) trialsv1beta1.Trial {
	t := trialsv1beta1.Trial{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: exp.Namespace, Labels: util.TrialLabels(exp)}}
	t.Spec.Objective = exp.Spec.Objective
	t.Spec.Labels = a.Labels
	for _, pa := range a.Assignments {
		t.Spec.ParameterAssignments = append(t.Spec.ParameterAssignments, commonv1beta1.ParameterAssignment{Name: pa.Name, Value: pa.Value})
	}
	value := strconv.FormatFloat(0.5+0.4*math.Sin(float64(index+1)), 'f', 4, 64)
	observation := &commonv1beta1.Observation{}
	for _, metric := range append([]string{exp.Spec.Objective.ObjectiveMetricName}, exp.Spec.Objective.AdditionalMetricNames...) {
		observation.Metrics = append(observation.Metrics, commonv1beta1.Metric{Name: metric, Min: value, Max: value, Latest: value})
	}
	t.Status.Observation = observation
	start := metav1.NewTime(time.Date(2026, 1, 1, 0, index, 0, 0, time.UTC))
	end := metav1.NewTime(start.Add(time.Minute))
	t.Status.StartTime, t.Status.CompletionTime = &start, &end
	t.Status.Conditions = []trialsv1beta1.TrialCondition{{Type: trialsv1beta1.TrialSucceeded, Status: corev1.ConditionTrue}}
	return t
}

// newSuggester serves goptuna in this process, or talks to a Python service driver: one JSON line
// {"instance", "request"} out, one line {"reply"} or {"error"} back.
func newSuggester(driver []string) (suggester, func(), error) {
	if len(driver) == 0 {
		services := map[string]*goptuna.SuggestionService{}
		return func(instance string, request *suggestionapi.GetSuggestionsRequest) (*suggestionapi.GetSuggestionsReply, error) {
			if services[instance] == nil {
				services[instance] = goptuna.NewSuggestionService()
			}
			return services[instance].GetSuggestions(context.Background(), request)
		}, func() {}, nil
	}
	cmd := exec.Command(driver[0], driver[1:]...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	lines := bufio.NewReader(stdout)
	stop := func() { _ = stdin.Close(); _ = cmd.Wait() }
	return func(instance string, request *suggestionapi.GetSuggestionsRequest) (*suggestionapi.GetSuggestionsReply, error) {
		raw, err := protojson.Marshal(request)
		if err != nil {
			return nil, err
		}
		line, err := json.Marshal(map[string]any{"instance": instance, "request": json.RawMessage(raw)})
		if err != nil {
			return nil, err
		}
		if _, err := stdin.Write(append(line, '\n')); err != nil {
			return nil, fmt.Errorf("driver: %w", err)
		}
		answer, err := lines.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("driver ended: %w", err)
		}
		var got struct {
			Reply json.RawMessage `json:"reply"`
			Error string          `json:"error"`
		}
		if err := json.Unmarshal(answer, &got); err != nil {
			return nil, err
		}
		if got.Error != "" {
			return nil, fmt.Errorf("%s", got.Error)
		}
		reply := &suggestionapi.GetSuggestionsReply{}
		return reply, protojson.Unmarshal(got.Reply, reply)
	}, stop, nil
}
