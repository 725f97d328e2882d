"""The HTTP server: FastAPI app factory, REST API, dashboard."""
