# The pods scenario of the vm-test guest: sourced by init.sh, which calls scenario_pods.
scenario_pods() {
    say "pods: not written yet"
}
