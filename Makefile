# Tidings — common tasks. `make test` is what CI runs (.ci/run).

CARGO ?= cargo
export TIDINGS_REQUIRE_ALL ?= 1

.PHONY: run test test-deps build release bench lint fmt clean deb cargo-deb deb-install-test

## run: start a server with the default configuration (127.0.0.1:8080, ./data)
run:
	$(CARGO) run --release -- serve

## test: install what the tests need, then run every test
test: test-deps
	$(CARGO) test --locked

## test-deps: what the tests use beyond cargo, installed only when missing:
## the Python clients of tests/interop, schemathesis for tests/schemathesis.rs,
## Debian's chromium and chromium-driver for tests/browser.rs, and for
## tests/packaging.rs cargo-deb (cargo install) with dpkg-dev, lintian and
## systemd's systemd-analyze, and redis-server for tests/federation*.rs
## (apt-get; CI runs as root).
PY_MODULES = requests sseclient-py websockets schemathesis
test-deps: cargo-deb
	@python3 -c "import requests, sseclient, websockets, schemathesis" 2>/dev/null || \
	  python3 -m pip install --quiet $(PY_MODULES) || \
	  python3 -m pip install --quiet --break-system-packages $(PY_MODULES)
	@if [ ! -x /usr/bin/chromium ] || ! command -v chromedriver >/dev/null 2>&1; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && \
	  apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi
	@missing=; \
	  command -v dpkg-shlibdeps >/dev/null 2>&1 || missing="$$missing dpkg-dev"; \
	  command -v lintian >/dev/null 2>&1 || missing="$$missing lintian"; \
	  command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	  command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	  if [ -n "$$missing" ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi

build:
	$(CARGO) build --locked

## deb: the Debian package, target/debian/tidings_<version>-1_<arch>.deb, from
## a release build (cargo-deb; metadata in Cargo.toml, files in packaging/).
## --strip: strip like dh_strip does (also drops the .comment section).
deb: cargo-deb
	$(CARGO) deb --locked --strip

## cargo-deb: installed (about a minute) only when `cargo deb` is missing
cargo-deb:
	@$(CARGO) deb --version >/dev/null 2>&1 || \
	  $(CARGO) install cargo-deb --locked --version '~3.8'

## deb-install-test: install, upgrade, remove and purge the package in a
## scratch Debian root (debootstrap, installed when missing; needs root and
## the Debian mirror). Not part of `make test`.
deb-install-test: deb
	packaging/install-test.sh "$$(ls -t target/debian/tidings_*.deb | head -1)"

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
