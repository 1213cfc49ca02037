"""Powertools logger, metrics and tracer shared by the functions (service and namespace from the environment)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

from mailproxy.config import METRICS_NAMESPACE, SERVICE_NAME

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", SERVICE_NAME)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)

logger = Logger(service=SERVICE_NAME, level=os.environ.get("GMP_LOG_LEVEL", "INFO"))
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
# Only AWS calls are traced: patching every library X-Ray knows costs ~0.07 s of cold start.
tracer = Tracer(service=SERVICE_NAME, disabled=os.environ.get("GMP_MODE", "local") != "aws", patch_modules=["botocore"])
