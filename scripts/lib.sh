# Shared by scripts/test.sh and scripts/demo.sh: configure a build directory the same way.
# fota_configure BUILD_DIR [extra cmake args...]
fota_configure() {
  local build_dir=$1
  shift
  local args=(-G Ninja -DFOTA_WERROR="${FOTA_WERROR:-ON}" "$@")
  # ccache (when installed) keys on paths relative to the checkout, so a fresh clone reuses the cache.
  if command -v ccache >/dev/null 2>&1; then
    args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
    export CCACHE_BASEDIR="$FOTA_ROOT" CCACHE_NOHASHDIR=1
  fi
  cmake -S "$FOTA_ROOT" -B "$build_dir" "${args[@]}"
}

# fota_build_targets TARGET...: install missing packages, then configure and build the given
# targets in $FOTA_ROOT/build (RelWithDebInfo), the tree the demo and the scenario runner use.
fota_build_targets() {
  "$FOTA_ROOT/scripts/install-deps.sh"
  fota_configure "$FOTA_ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$FOTA_ROOT/build" -j"$(nproc)" --target "$@"
}
