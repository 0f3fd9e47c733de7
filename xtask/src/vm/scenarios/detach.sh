# The detach scenario of the vm-test guest: sourced by init.sh, which calls scenario_detach.
scenario_detach() {
    say "detach: not written yet"
}
