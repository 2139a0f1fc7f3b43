"""What a run is told: protocol profiles, run options, tokens, pacing and the chat corpus."""
