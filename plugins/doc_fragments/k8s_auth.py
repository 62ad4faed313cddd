# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment:
    # Options of plugins/module_utils/k8s.py AUTH_ARG_SPEC; keep the two in step.
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file (several paths joined by C(:) are merged, as kubectl does).
      - Falls back to the E(K8S_AUTH_KUBECONFIG) environment variable, then E(KUBECONFIG),
        then C(~/.kube/config), then the in-cluster service account.
    type: path
  context:
    description:
      - Name of the context in the kubeconfig to use. Defaults to the kubeconfig's current context.
      - Falls back to the E(K8S_AUTH_CONTEXT) environment variable.
    type: str
  host:
    description:
      - URL of the Kubernetes API server, overriding the kubeconfig.
      - Falls back to the E(K8S_AUTH_HOST) environment variable.
    type: str
  api_key:
    description:
      - Bearer token for the API server, overriding the kubeconfig.
      - Falls back to the E(K8S_AUTH_API_KEY) environment variable.
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate.
      - Falls back to the E(K8S_AUTH_VERIFY_SSL) environment variable; otherwise the kubeconfig decides.
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - Path to a CA certificate bundle for the API server.
      - Falls back to the E(K8S_AUTH_SSL_CA_CERT) environment variable.
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - Path to a client certificate for authenticating to the API server.
      - Falls back to the E(K8S_AUTH_CERT_FILE) environment variable.
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - Path to the key of O(client_cert).
      - Falls back to the E(K8S_AUTH_KEY_FILE) environment variable.
    type: path
    aliases: [key_file]
requirements:
  - kubernetes (the Python client library, on the host that runs the task)
notes:
  - The API client is cached per process by a hash of these settings and of the files they name.
"""
