"""Names of the MLflow tags (and Optuna user attributes) vaeok sets: defined once, used everywhere."""

STUDY_TAG = "vaeok.study"  # the study a run belongs to
TRIAL_TAG = "vaeok.trial"  # the Optuna trial number of a trial run
ROLE_TAG = "vaeok.role"  # study | baseline | paper_default (also a trial user attribute)
STATE_TAG = "vaeok.state"  # COMPLETE | PRUNED | FAILED | KILLED
ERROR_TAG = "vaeok.error"  # the one-line error of a failed run
PROMOTE_TAG = "vaeok.promote"  # set on promote runs
REPRODUCES_TAG = "vaeok.reproduces"  # the run a `--from-run` run reproduces
PRUNED_TAG = "vaeok.pruned"  # why the pruner stopped a trial (its run is FINISHED, vaeok.state=PRUNED)
PRUNED_SUFFIX = "-pruned"  # run-name suffix of a pruned trial's run
DUPLICATE_TAG = "vaeok.duplicate_of"  # the trial whose parameters (and result) a trial repeated
SEARCHED_TAG = "vaeok.searched"  # comma list of the keys the run's study searches
# MLflow system tags
NOTE_TAG = "mlflow.note.content"  # a run's description in the MLflow UI (Markdown)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # MLflow 3: which views the UI offers for an experiment
EXPERIMENT_KIND = "custom_model_development"  # model training (runs, charts, compare), not GenAI
