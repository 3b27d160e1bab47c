"""The ModelFleet serving app: imported by every replica of a fleet (serving_app/app.py builds them)."""

import os

from serving_app.loopback import keep_replica_grpc_on_loopback

# Before Serve starts the replica's inter-deployment gRPC server: on a local fleet, bind it to 127.0.0.1.
keep_replica_grpc_on_loopback()

# The engine fetches media URLs the front door checked (serving_app/media.py); a redirect would take it
# elsewhere unchecked, so it follows none (a deployment may still set the variable to 1).
os.environ.setdefault("VLLM_MEDIA_URL_ALLOW_REDIRECTS", "0")
