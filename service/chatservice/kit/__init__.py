"""HTTP plumbing shared by every route: dependencies, body parsing and limits, error handlers,
CORS, OpenAPI additions, the worker class and draining. Nothing here knows about chat."""
