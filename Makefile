# wardflow: `make demo` and `make test` do all set-up on a fresh machine (Python 3.11, Java 17, Maven).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SERVICES := deploy/local/services.sh

.PHONY: cluster cluster-stop venv services stop demo census-demo train evaluate-model validate-external model-card retrain promote-decision audit-pack quarantine quality-reference model-reference test test-unit test-integration check lint typecheck dashboards dashboards-check previews bench evaluate clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,train]" --config-settings editable_mode=compat
	touch $@

services: venv
	$(SERVICES) start all

stop:
	$(SERVICES) stop all

# A standalone Flink session cluster from PyFlink's distribution on 127.0.0.1:18091 (README
# "Run on a cluster"): `eval "$(.venv/bin/python -m deploy.local.flink_cluster env)"`, then
# `flink run -m 127.0.0.1:18091 -pym jobs.sepsis_screen`.
cluster: venv services
	$(BIN)/python -m deploy.local.flink_cluster start

cluster-stop: venv
	$(BIN)/python -m deploy.local.flink_cluster stop

demo: venv
	$(BIN)/python -m deploy.local.demo

# The bed census over generated multi-site ADT traffic (MIMIC=1: the MIMIC-IV demo's transfers).
census-demo: venv
	$(SERVICES) start kafka
	$(BIN)/python -m deploy.local.census_demo $(if $(MIMIC),--mimic)

# Train the sepsis risk model (PhysioNet 2019 format: FILE=…, set A by default), write its
# validation report, register it if its subgroup gate passes (the first version is champion).
train: venv
	$(BIN)/python -m training.train $(if $(FILE),--file $(FILE))

# The data-quality monitors' reference (udfs/quality_reference.json, committed) from PhysioNet
# 2019 set A: regenerate when the training data or a topic's fields change.
quality-reference: venv
	$(BIN)/python -m training.quality_reference $(if $(FILE),--file $(FILE))

# The model monitor's references (reference.json next to each bundled version's spec, committed):
# the sepsis versions' from set A, the catalog's from 2012 set B and Diabetes 130's validation
# split; training.train and the catalog trainers write one for every new version themselves.
model-reference: venv
	$(BIN)/python -m training.reference training/bundled/sepsis-risk/* $(if $(FILE),--file $(FILE))
	$(BIN)/python -m training.catalog.reference training/bundled/icu-mortality/* training/bundled/length-of-stay/* training/bundled/readmission-30d/*

# The registry's champion on a PhysioNet 2019 format file (or a folder of .psv): AUROC and
# normalised utility on the last line.
evaluate-model: venv
	$(BIN)/python -m training.registry bootstrap
	$(BIN)/python -m training.evaluate $(if $(MODEL),--model $(MODEL)) $(if $(FILE),--file $(FILE))

# Proxy external validation of the sepsis model: other hospitals, other units, ablations. OUT=…
validate-external: venv
	$(BIN)/python -m training.registry bootstrap
	$(BIN)/python -m training.external $(if $(OUT),--out $(OUT))

# A model card for a registry version (default: the champion): MODEL=… VERSION=… OUT=…
model-card: venv
	$(BIN)/python -m training.registry bootstrap
	$(BIN)/python -m training.model_card $(if $(MODEL),--model $(MODEL)) $(if $(VERSION),--version $(VERSION)) $(if $(OUT),--out $(OUT))

# Retrain on a monitor breach (TRIGGER=monitor, default) or a schedule (TRIGGER=schedule), on set A
# plus recent labelled data (COHORT=eicu_demo, FILE=…parquet, or WAREHOUSE_DAYS=…): only a
# candidate that passes the gate is registered, as challenger. BASE_PATIENTS=… for speed (EPOCHS=… when the champion is an MLP).
retrain: venv
	$(BIN)/python -m training.registry bootstrap
	$(BIN)/python -m training.retrain --model $(or $(MODEL),sepsis-risk) --trigger $(or $(TRIGGER),monitor) $(if $(COHORT),--recent-cohort $(COHORT)) $(if $(FILE),--recent $(FILE)) $(if $(WAREHOUSE_DAYS),--recent-warehouse $(WAREHOUSE_DAYS)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(BASE_PATIENTS),--base-patients $(BASE_PATIENTS))

# Promote the challenger only if its shadow AUROC beats the champion's by the margin (warehouse
# shadow scores, or COHORT=…/FILE=… labelled data); DRY_RUN=1 decides without changing roles.
promote-decision: venv
	$(BIN)/python -m training.promote_decision --model $(or $(MODEL),sepsis-risk) $(if $(COHORT),--cohort $(COHORT)) $(if $(FILE),--file $(FILE)) $(if $(DRY_RUN),--dry-run)

# The regulator's audit pack of a version (default: the champion): MODEL=… VERSION=… OUT=…
audit-pack: venv
	$(BIN)/python -m training.registry bootstrap
	$(BIN)/python -m training.audit_pack $(if $(MODEL),--model $(MODEL)) $(if $(VERSION),--version $(VERSION)) $(if $(OUT),--out $(OUT))

# Source quarantines (udfs/quarantine.py): the open ones; ARGS="clear vitals.device.v1 hospital-a
# MICU --reason '…'" (or set …, list --all) changes them. The actuator: python -m sinks.quarantine.
quarantine: venv
	$(BIN)/python -m udfs.quarantine $(or $(ARGS),list)

# Two pytest processes side by side: the tests that run Flink jobs or use the local services
# (marked `jobs` by tests/conftest.py) one after the other, and beside them, at the lowest CPU
# priority so that the jobs' timing is what it would be alone, all the others, whose report
# follows. Fails when either fails.
# A job a test starts as a process of its own (its command line, `flink run`, a standalone
# cluster) lives a minute or two, most of it planning SQL in a cold JVM: C1 alone compiles for it
# with about half the CPU of C1 and C2 together (the screening job's plan: 26-28 CPU-s against
# 44-50, the same wall time), and on 2 cores CPU is what the suite waits on. The tests' own JVM,
# which runs job after job, keeps C2. A JVM_ARGS given to make wins (tests/conftest.py shell_env).
TEST_CHILD_JIT ?= -XX:TieredStopAtLevel=1
test: venv services
	@export WARDFLOW_TEST_CHILD_JIT="$(TEST_CHILD_JIT)"; \
	rest_log=$$(mktemp "$${TMPDIR:-/tmp}/wardflow-tests-beside-jobs.XXXXXX"); \
	nice -n 19 $(BIN)/python -m pytest -q -m "not jobs" > $$rest_log 2>&1 & rest=$$!; \
	trap 'kill $$rest 2>/dev/null' INT TERM; \
	echo "the tests that run jobs or use the services (the others beside them: $$rest_log)"; \
	$(BIN)/python -m pytest -q -m jobs; jobs=$$?; \
	wait $$rest; rest=$$?; \
	echo; echo "the tests beside them (-m 'not jobs'):"; cat $$rest_log; rm -f $$rest_log; \
	echo "jobs' tests exit $$jobs, the others' exit $$rest"; \
	[ $$jobs -eq 0 ] && [ $$rest -eq 0 ]

test-unit: venv
	$(BIN)/python -m pytest -q -m "not integration"

test-integration: venv services
	$(BIN)/python -m pytest -q -m integration

check: lint typecheck dashboards-check

# Grafana dashboards and provisioning from grafana/specs.py; CI fails when the JSON is stale.
dashboards: venv
	$(BIN)/python -m grafana.build
	$(BIN)/python -m deploy.k8s_schemas grafana

dashboards-check: venv
	$(BIN)/python -m grafana.build --check
	$(BIN)/python -m deploy.k8s_schemas grafana --check

# PNG previews of every dashboard from the same SQL, over a freshly seeded warehouse.
previews: venv
	$(BIN)/python -m grafana.preview --seed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

bench: venv
	$(SERVICES) start kafka
	$(BIN)/python -m bench.spine
	$(BIN)/python -m bench.device_rate
	$(BIN)/python -m bench.state_size
	$(BIN)/python -m bench.sepsis_screen
	$(BIN)/python -m bench.census
	$(BIN)/python -m bench.dashboards
	$(BIN)/python -m bench.scoring
	$(BIN)/python -m bench.catalog
	$(BIN)/python -m bench.cluster_scale
	$(BIN)/python -m bench.hl7_gateway
	$(BIN)/python -m bench.fhir_ingest_memory
	$(BIN)/python -m bench.fhir_ingest_memory --export gcs_totals --label latest_gcs_totals
	$(SERVICES) start fhir
	$(BIN)/python -m bench.ehr_writeback

# The screening rules on a PhysioNet 2019 format file (set A by default): FILE=… PATIENTS=…
evaluate: venv
	$(SERVICES) start kafka
	$(BIN)/python -m training.evaluate_rules $(if $(FILE),--file $(FILE)) $(if $(PATIENTS),--patients $(PATIENTS)) $(if $(OUT),--out $(OUT))

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
