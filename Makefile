.PHONY: test run testbed-up testbed-down testbed-status unit lint sanity build
test:            ## every test tier (what CI runs)
	bash scripts/test.sh
run:             ## the main job on the embedded default: testbed up + playbooks + summary
	bash scripts/run.sh
unit:
	bash scripts/bootstrap.sh --no-testbed && .venv/bin/python -m pytest tests/unit
testbed-up:
	bash scripts/bootstrap.sh && .venv/bin/python testbed/testbed.py up
testbed-down:
	.venv/bin/python testbed/testbed.py down
testbed-status:
	.venv/bin/python testbed/testbed.py status
lint:
	.venv/bin/ansible-lint --profile production
sanity:
	bash tests/sanity/ansible_test_sanity.sh
build:
	.venv/bin/ansible-galaxy collection build --force
