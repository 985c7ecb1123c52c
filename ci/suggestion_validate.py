"""Runs one of Katib's Python suggestion services' ValidateAlgorithmSettings on requests from stdin.

Run with the service's own venv (ci/install-suggestion-services.sh) and the PYTHONPATH of the
service's Dockerfile (the Katib module, its pkg/apis/manager/v1beta1/python and .../health/python),
so the code judging is Katib's: `python ci/suggestion_validate.py SERVICE`. Each stdin line is a JSON
array of the requests Katib's suggestion controller sends (katibcheck convert); each answer line is a
JSON array with one result per request: {"error": message} when the service refuses (an
INVALID_ARGUMENT status, or an exception, which gRPC turns into an error status too), else {}.
The process stays up between lines, so the service is imported once.

`python ci/suggestion_validate.py SERVICE suggest` runs GetSuggestions instead, for `katibcheck
resume`: each stdin line is {"instance": name, "request": GetSuggestionsRequest}; the named service
instance is made on its first request, as a service process is; each answer line is
{"reply": GetSuggestionsReply} or {"error": message}.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys

from google.protobuf import json_format

logging.disable(logging.CRITICAL)  # the services log every refusal

CLASSES = {
    "hyperopt": "HyperoptService",
    "optuna": "OptunaService",
    "skopt": "SkoptService",
    "hyperband": "HyperbandService",
    "pbt": "PbtService",
    "medianstop": "MedianStopService",
    "darts": "DartsService",
    "enas": "EnasService",
}
NAS = {"darts", "enas"}  # under pkg/suggestion/v1beta1/nas/; enas makes ctrl_cache/ in the working directory


class Context:
    """The part of grpc.ServicerContext the validators use."""

    def __init__(self):
        self.code, self.details = None, ""

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details


def suggest(module, service, api_pb2):
    # pbt keeps its trials' checkpoints under the PVC Katib mounts at /opt/katib/data; here that is
    # the working directory's data/, shared by the instances as the PVC is by the service's pods.
    if hasattr(module, "_DATA_PATH"):
        module._DATA_PATH = os.path.abspath("data")
    instances = {}
    for line in sys.stdin:
        message = json.loads(line)
        request = json_format.ParseDict(message["request"], api_pb2.GetSuggestionsRequest())
        context = Context()
        try:
            if message["instance"] not in instances:
                instances[message["instance"]] = getattr(module, CLASSES[service])()
            reply = instances[message["instance"]].GetSuggestions(request, context)
        except Exception as exc:  # the gRPC server answers an error status for it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            if context.code is not None:
                answer = {"error": context.details or str(context.code)}
            else:
                answer = {"reply": json_format.MessageToDict(reply)}
        print(json.dumps(answer), flush=True)


def main():
    service = sys.argv[1]
    api_pb2 = importlib.import_module("pkg.apis.manager.v1beta1.python.api_pb2")
    if service == "medianstop":  # the early-stopping service: its own request and method
        module = importlib.import_module("pkg.earlystopping.v1beta1.medianstop.service")
        request_type, method = api_pb2.ValidateEarlyStoppingSettingsRequest, "ValidateEarlyStoppingSettings"
    else:
        package = f"pkg.suggestion.v1beta1.{'nas.' if service in NAS else ''}{service}"
        module = importlib.import_module(f"{package}.service")
        request_type, method = api_pb2.ValidateAlgorithmSettingsRequest, "ValidateAlgorithmSettings"
    if sys.argv[2:] == ["suggest"]:
        return suggest(module, service, api_pb2)
    for line in sys.stdin:
        results = []
        for raw in json.loads(line):
            request = json_format.ParseDict(raw, request_type())
            context = Context()
            try:
                getattr(getattr(module, CLASSES[service])(), method)(request, context)
            except Exception as exc:  # the gRPC server answers an error status for it
                results.append({"error": f"{type(exc).__name__}: {exc}"})
                continue
            results.append({"error": context.details or str(context.code)} if context.code is not None else {})
        print(json.dumps(results), flush=True)


main()
