"""Many replicas behind HAProxy with Redis as the control plane (README "Scaling out")."""
