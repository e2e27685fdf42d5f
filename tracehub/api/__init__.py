"""REST API (`/api/v1/...`), health endpoints and the app factory."""
