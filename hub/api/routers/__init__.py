"""HTTP routes of the hub API, one module per resource."""
