# Tidings — common tasks. `make test` is what CI runs (.ci/run).

CARGO ?= cargo
export TIDINGS_REQUIRE_ALL ?= 1

.PHONY: run test test-deps build release bench lint fmt clean

## run: start a server with the default configuration (127.0.0.1:8080, ./data)
run:
	$(CARGO) run --release -- serve

## test: install what the tests need, then run every test
test: test-deps
	$(CARGO) test --locked

## test-deps: external programs the tests use (none yet for the spine; later
## suites add redis-server and chromium here, installed only when missing)
test-deps:
	@true

build:
	$(CARGO) build --locked

release:
	$(CARGO) build --release --locked

## bench: the standard load scenarios against a freshly spawned release server
bench:
	ulimit -n 65536 2>/dev/null || ulimit -n "$$(ulimit -Hn)"; \
	$(CARGO) run --release --locked -- bench all --spawn

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
