# The two commands of the README: `make demo` and `make test`. Both install what is missing first.
.PHONY: setup demo test lint format typecheck dev clean

setup:
	bash scripts/setup.sh

demo: setup
	bin/gantry demo

test: setup lint
	bash bench/keras/setup.sh
	npx tsc --noEmit -p .
	npx vitest run

# The layout's rules and the formatter's, in well under a minute: Biome's formatting, no line over 120 characters,
# no import cycle between top-level folders and no forbidden arrow (scripts/check-layers.ts).
lint:
	npx biome format .
	bash scripts/check-line-length.sh
	npx tsx scripts/check-layers.ts

format:
	npx biome format --write .

typecheck:
	npx tsc --noEmit -p .

dev: setup
	bin/gantry dev

clean:
	rm -rf .gantry
