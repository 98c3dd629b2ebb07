"""One PEC iteration, written once (`driver.run_iteration`, shared by `pec run` and the `pec` flow).

Its steps each read their inputs from the store and write their outputs: `run_setup` (seed the
state, preflight), `training` and `budget` (each expert's job and PPO iterations), `trunk`
(the policy iteration 0's experts fork from), `frontier` (candidates, evaluation jobs,
scores.json), `refit` (the iteration's one state write) and `coverage` (the stopping rule);
`job_inputs` holds what every job of a run shares and `lease` keeps one live driver per
iteration.
"""
