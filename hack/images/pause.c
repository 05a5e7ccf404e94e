/*
 * The sandbox's pause container: PID 1 of every pod on the real node. It holds the pod's namespaces, reaps
 * the zombies a shared PID namespace hands it, and exits 0 on SIGTERM or SIGINT (as kubelet stops a pod).
 * Built with `gcc -static` by hack/images/build.sh; no libc beyond what the static binary carries.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int signo) { (void)signo; stop = 1; }

static void on_child(int signo) {
    (void)signo;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("modelyard pause\n");
        return 0;
    }
    if (getpid() != 1) {
        fprintf(stderr, "pause: warning: not PID 1, zombies of other processes are not reaped\n");
    }
    struct sigaction stop_action = {.sa_handler = on_stop};
    struct sigaction child_action = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigemptyset(&stop_action.sa_mask);
    sigemptyset(&child_action.sa_mask);
    if (sigaction(SIGINT, &stop_action, NULL) < 0 || sigaction(SIGTERM, &stop_action, NULL) < 0 ||
        sigaction(SIGCHLD, &child_action, NULL) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    /* Stop signals stay blocked except inside sigsuspend, so one arriving between the test and the wait is
     * not lost. */
    sigset_t blocked, waiting;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    sigprocmask(SIG_BLOCK, &blocked, &waiting);
    sigdelset(&waiting, SIGINT);
    sigdelset(&waiting, SIGTERM);
    while (!stop) {
        sigsuspend(&waiting);
    }
    fprintf(stderr, "pause: shutting down\n");
    return 0;
}
