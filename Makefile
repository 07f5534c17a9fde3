# The two commands of the README: `make demo` and `make test`. Both install what is missing first.
.PHONY: setup demo test typecheck dev clean

setup:
	bash scripts/setup.sh

demo: setup
	bin/gantry demo

test: setup
	npx tsc --noEmit -p .
	npx vitest run

typecheck:
	npx tsc --noEmit -p .

dev: setup
	bin/gantry dev

clean:
	rm -rf .gantry
