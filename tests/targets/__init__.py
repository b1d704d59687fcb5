"""Small, deliberately broken or hostile Group Normalization targets for the checker's own tests."""
