"""One PEC iteration: the store-level steps (`steps`) and the one driver (`driver.run_iteration`) that `pec run` and the `pec` flow share."""
