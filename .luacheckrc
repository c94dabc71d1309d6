-- luacheck (CI: .ci/run). The point is correctness: no global is set or
-- read by accident, nothing assigned goes unused. Line length and unused
-- arguments (callbacks keep their full signatures) are style, not checked.
std = "luajit"
max_line_length = false
unused_args = false
exclude_files = {
  "spec/fixtures/ecosystem/*", -- broken on purpose: syntax errors, endless loops
  "build*/**",
}
files["spec/"] = { std = "+busted" }
