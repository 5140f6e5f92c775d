#!/bin/sh
# repl.sh -- drive the real REPL through tmux (a pseudo-terminal): expressions print their value, plume
# objects print readably, multi-line input continues, Ctrl-C stops a long plume.infer and keeps the state,
# and history is saved to ~/.plume_history.
P=${PLUME:-build/plume}
case "$P" in /*) ;; *) P="$PWD/$P" ;; esac
command -v tmux >/dev/null || { echo "FAIL repl_needs_tmux: tmux is not installed"; exit 1; }
T=$(mktemp -d)
S="plume-repl-$$"
trap 'tmux kill-session -t "$S" 2>/dev/null; rm -rf "$T"' EXIT
tmux new-session -d -s "$S" -x 160 -y 50 "env HOME=$T TERM=xterm $P"

screen() { tmux capture-pane -p -t "$S" -S -200; }
# wait_for PATTERN: poll the screen up to 10 s
wait_for() {
    i=0
    while [ $i -lt 100 ]; do
        screen | grep -qF -- "$1" && return 0
        sleep 0.1; i=$((i + 1))
    done
    return 1
}
send() { tmux send-keys -t "$S" -l -- "$1"; tmux send-keys -t "$S" Enter; }
check() {  # name pattern
    if wait_for "$2"; then echo "PASS $1"; else echo "FAIL $1: '$2' not on screen"; screen | grep -v "^$" | tail -15; fi
}

check repl_starts_with_a_banner "plume 0.1.0"
send '1+1'
check expression_prints_its_value "
2"
screen | grep -qx '2' && echo "PASS expression_value_on_its_own_line" || echo "FAIL expression_value_on_its_own_line"
send 'plume.dist.normal(0, 1)'
check plume_objects_print_readably "normal(mu=0, sigma=1)"
send '{1, 2, a = 3}'
check tables_print_their_contents "{1, 2, a = 3}"
send 'for i = 1, 2 do'
check incomplete_statement_continues ">>"
send 'print(i * 10)'
send 'end'
check multi_line_statement_runs "20"
send 'x = 42'
send 'post = plume.infer(plume.model(function(m) m:sample("a", plume.dist.normal(0, 1)) end), nil, {samples = 100000000, chains = 1, quiet = true})'
sleep 1.5
tmux send-keys -t "$S" C-c
check ctrl_c_interrupts_a_long_infer "interrupted"
send 'print("x is " .. x)'
check state_survives_the_interrupt "x is 42"
send 'error("oops")'
check errors_do_not_end_the_session "stdin:1: oops"
send 'print("still here")'
check session_continues_after_an_error "still here"
tmux send-keys -t "$S" C-d
i=0
while [ $i -lt 50 ] && tmux has-session -t "$S" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
grep -q '^1+1$' "$T/.plume_history" 2>/dev/null && echo "PASS history_is_saved" || echo "FAIL history_is_saved: $(cat "$T/.plume_history" 2>&1)"
