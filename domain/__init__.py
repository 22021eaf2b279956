"""Domain types and user-facing errors: the leaf that assistant/, storage/ and ui/ all import; imports none of them."""
