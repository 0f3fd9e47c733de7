# The ringloss scenario of the vm-test guest: sourced by init.sh, which calls scenario_ringloss.
scenario_ringloss() {
    say "ringloss: not written yet"
}
