"""Framework adapters: each subpackage is optional and imported only when used."""
