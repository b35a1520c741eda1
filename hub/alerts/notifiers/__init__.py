"""Ways an incident reaches people: the console (SSE), grid workers' apps (MQTT) and
webhooks. Durable delivery goes through the outbox table (``hub.store.outbox``)."""
