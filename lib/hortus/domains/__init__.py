"""Example domains (projects on Hortus); the library never imports them."""
