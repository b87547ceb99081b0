"""What serving many visitors needs, kept apart from the course's concepts: training in child
processes (worker), the line of runs waiting for a slot (run_queue), visitors' storage, quotas and
clean-up (storage), and allocator tuning for training processes (malloc)."""
