"""After the iterations: what PEC is worth and how it is deployed.

The final evaluation (score_summary, final_eval_jobs, final_eval_summary and its one driver,
final_eval_driver), the generalist (baseline), the distilled student (distill), the comparison
of them all (comparison), the deployable bundle (bundle: format and loader; bundle_export,
torch_router, checkpoint_actor) and designs files.
"""
