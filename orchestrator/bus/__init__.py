"""The Redis Streams event bus."""
