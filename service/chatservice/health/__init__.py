"""Three-tier health: liveness, readiness and a comprehensive report."""
