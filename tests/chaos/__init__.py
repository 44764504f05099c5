"""The chaos test's pieces: a saga whose steps record every execution, the processes that
drive it (workers, relays, a proxy in front of the broker), and the checks of its promises."""
