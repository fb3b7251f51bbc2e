"""Names of the MLflow tags (and Optuna user attributes) vaeok sets: defined once, used everywhere."""

STUDY_TAG = "vaeok.study"  # the study a run belongs to
TRIAL_TAG = "vaeok.trial"  # the Optuna trial number of a trial run
ROLE_TAG = "vaeok.role"  # study | baseline | paper_default (also a trial user attribute)
STATE_TAG = "vaeok.state"  # COMPLETE | PRUNED | FAILED | KILLED
ERROR_TAG = "vaeok.error"  # the one-line error of a failed run
PROMOTE_TAG = "vaeok.promote"  # set on promote runs
REPRODUCES_TAG = "vaeok.reproduces"  # the run a `--from-run` run reproduces
