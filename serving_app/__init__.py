"""The ModelFleet serving app: imported by every replica of a fleet (serving_app/app.py builds them)."""

from serving_app.loopback import keep_replica_grpc_on_loopback

# Before Serve starts the replica's inter-deployment gRPC server: on a local fleet, bind it to 127.0.0.1.
keep_replica_grpc_on_loopback()
