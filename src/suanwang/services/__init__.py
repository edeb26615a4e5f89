"""Use cases: each public function is one database transaction around the pure core."""
