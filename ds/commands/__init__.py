"""The commands that change things: setup, submit (submitJob), start
(startCluster), prepare, check (read-only), local (the whole run on this machine)."""
