"""Names that cross between the operator, which renders and mounts them, and the Ray pods, which read them."""

from __future__ import annotations

# Serve's HTTP port (KubeRay's `<rayservice>-serve-svc` targets it) and the Ray dashboard's.
SERVE_PORT = 8000
DASHBOARD_PORT = 8265

# One Serve application per model, named after it and routed at /<model>, and the fleet's router at /.
MODEL_IMPORT_PATH = "serving_app.app:build_model_app"
ROUTER_IMPORT_PATH = "serving_app.app:build_router_app"
ROUTER_APP_NAME = "fleet"

# The fleet's API keys: each Secret key mounted at <API_KEYS_DIR>/<secretName>/<key> (never rendered into
# an environment variable or the Serve config); the serving app reads the folder this variable names.
API_KEYS_DIR_ENV = "MODELFLEET_API_KEYS_DIR"
API_KEYS_DIR = "/etc/modelfleet/api-keys"
# How stale a front door's (or HAProxy's) view of the key files may be: a rotated key applies within it.
KEYS_RELOAD_S = 2.0

# Set on a local head (`modelfleet up`): every listener of the fleet on 127.0.0.1, the replicas' gRPC
# servers (serving_app/loopback.py) and HAProxy's stats and metrics ports (serving_app/haproxy.py) included.
LOOPBACK_ENV = "MODELFLEET_LOOPBACK_ONLY"

# High-throughput mode: Ray Serve runs the HAProxy this variable names, ModelFleet's wrapper, which comes
# with the fleet's routes from a ConfigMap every Ray pod mounts at HAPROXY_DIR.
HAPROXY_BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"
HAPROXY_DIR = "/etc/modelfleet/haproxy"
HAPROXY_WRAPPER_KEY = "haproxy"
HAPROXY_ROUTES_KEY = "unified-routes.json"
# Set (only) by HAProxy on the requests to the fleet's endpoint it routed to a model's prefix, so the
# model's server counts them as the fleet endpoint's; a client's own is removed first.
ROUTED_HEADER = "x-modelfleet-endpoint"
ROUTED_VALUE = "unified"

# The public routes, on the fleet's endpoint and under each model's prefix.
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
MODELS = "/v1/models"
INFER = "/v1/infer"
HEALTHZ = "/healthz"
# The JSON calls whose body names the model: HAProxy routes them by it on the fleet's endpoint.
BODY_ROUTED = (CHAT, COMPLETIONS, EMBEDDINGS)

# A model's name is a Serve application name and its route prefix; these would shadow the router's routes.
RESERVED_MODEL_NAMES = ("v1", "fleet", "healthz", "metrics", "docs", "openapi.json", "api", "-")
# Model, adapter and alias names: DNS labels (at most 63 characters, which the API bounds apart).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
