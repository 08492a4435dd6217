"""What users write: ``@remote`` functions and actor classes (and, later, graph nodes)."""
