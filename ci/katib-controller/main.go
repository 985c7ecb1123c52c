// Command katib-controller runs Katib's controllers and admission webhooks for the control-plane
// tests. It is katib-nas's own entry point around Katib's packages, because Katib's binds its
// webhook server to every interface and reads the certificate from the fixed /tmp/cert; this one
// binds to one address and takes the certificate directory as a flag, so test runs stay on
// loopback and do not share files.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/spf13/viper"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/manager/signals"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	configv1beta1 "github.com/kubeflow/katib/pkg/apis/config/v1beta1"
	apis "github.com/kubeflow/katib/pkg/apis/controller"
	controller "github.com/kubeflow/katib/pkg/controller.v1beta1"
	"github.com/kubeflow/katib/pkg/controller.v1beta1/consts"
	"github.com/kubeflow/katib/pkg/util/v1beta1/katibconfig"
	webhookv1beta1 "github.com/kubeflow/katib/pkg/webhook/v1beta1"
)

func main() {
	configFile := flag.String("katib-config", "", "KatibConfig file; its init.controller section is used")
	certDir := flag.String("cert-dir", "", "directory holding tls.crt and tls.key for the webhook server")
	host := flag.String("webhook-host", "127.0.0.1", "address the webhook server listens on")
	flag.Parse()
	logf.SetLogger(zap.New())
	if err := run(*configFile, *certDir, *host); err != nil {
		fmt.Fprintln(os.Stderr, "katib-controller:", err)
		os.Exit(1)
	}
}

func run(configFile, certDir, host string) error {
	if certDir == "" {
		return fmt.Errorf("--cert-dir is required")
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		apis.AddToScheme, configv1beta1.AddToScheme, clientgoscheme.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	initConfig, err := katibconfig.GetInitConfigData(scheme, configFile)
	if err != nil {
		return fmt.Errorf("reading %s: %w", configFile, err)
	}
	c := initConfig.ControllerConfig
	trialKinds, err := katibconfig.TrialResourcesToGVKs(c.TrialResources)
	if err != nil {
		return fmt.Errorf("init.controller.trialResources: %w", err)
	}
	// Katib's controllers and webhooks read these settings from viper.
	viper.Set(consts.ConfigExperimentSuggestionName, c.ExperimentSuggestionName)
	viper.Set(consts.ConfigInjectSecurityContext, c.InjectSecurityContext)
	viper.Set(consts.ConfigEnableGRPCProbeInSuggestion, c.EnableGRPCProbeInSuggestion)
	viper.Set(consts.ConfigTrialResources, trialKinds)

	kube, err := config.GetConfig()
	if err != nil {
		return err
	}
	mgr, err := manager.New(kube, manager.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: c.MetricsAddr},
		HealthProbeBindAddress: c.HealthzAddr,
	})
	if err != nil {
		return err
	}
	hooks := webhook.NewServer(webhook.Options{Host: host, Port: *c.WebhookPort, CertDir: certDir})
	if err := controller.AddToManager(mgr); err != nil {
		return err
	}
	if err := webhookv1beta1.AddToManager(mgr, hooks); err != nil {
		return err
	}
	return mgr.Start(signals.SetupSignalHandler())
}
