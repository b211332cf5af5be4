"""Where records go: JetStream (acked), rotated files, and the spill file used while NATS is away."""
