// psacheck evaluates every pod template in a stream of Kubernetes manifests against the
// "restricted" Pod Security Standard, using the same library the API server's admission uses
// (k8s.io/pod-security-admission). It reads YAML documents on stdin and prints one line per
// violation; it exits 1 when any pod template violates the standard.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// podSpecPaths lists where each kind keeps its pod template; Katib's Experiment nests a Job.
var podSpecPaths = map[string][][]string{
	"Pod":              {{"spec"}},
	"Job":              {{"spec", "template", "spec"}},
	"Deployment":       {{"spec", "template", "spec"}},
	"StatefulSet":      {{"spec", "template", "spec"}},
	"DaemonSet":        {{"spec", "template", "spec"}},
	"Experiment":       {{"spec", "trialTemplate", "trialSpec", "spec", "template", "spec"}},
	"InferenceService": {{"spec", "predictor"}},
}

func main() {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	level := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	decoder := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(os.Stdin), 4096)
	checked, violations := 0, 0
	for {
		var doc map[string]interface{}
		if err := decoder.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			fmt.Fprintln(os.Stderr, "psacheck: cannot parse input:", err)
			os.Exit(2)
		}
		kind, _ := doc["kind"].(string)
		meta, _ := doc["metadata"].(map[string]interface{})
		name, _ := meta["name"].(string)
		for _, path := range podSpecPaths[kind] {
			raw, found := dig(doc, path)
			if !found {
				continue
			}
			spec := corev1.PodSpec{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &spec); err != nil {
				fmt.Fprintf(os.Stderr, "psacheck: %s/%s: not a pod spec: %v\n", kind, name, err)
				os.Exit(2)
			}
			checked++
			for _, result := range evaluator.EvaluatePod(level, &metav1.ObjectMeta{}, &spec) {
				if !result.Allowed {
					violations++
					fmt.Printf("%s/%s: %s: %s\n", kind, name, result.ForbiddenReason, result.ForbiddenDetail)
				}
			}
		}
	}
	fmt.Printf("psacheck: %d pod templates checked against restricted:%s, %d violations\n", checked, level.Version.String(), violations)
	if violations > 0 || checked == 0 {
		os.Exit(1)
	}
}

func dig(doc map[string]interface{}, path []string) (map[string]interface{}, bool) {
	current := doc
	for _, key := range path {
		next, ok := current[key].(map[string]interface{})
		if !ok {
			return nil, false
		}
		current = next
	}
	return current, true
}
