/* Tries what a container would do to reach the guest kernel's user-namespace surface:
 * clone(CLONE_NEWUSER). Prints "userns ok" or "userns refused <errno text>", and
 * "fork ok" as a control that plain clone still works. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void child_or_report(long pid, const char *what) {
    if (pid == 0)
        _exit(0);
    if (pid < 0) {
        printf("%s refused %s\n", what, strerror(errno));
        return;
    }
    waitpid((pid_t)pid, NULL, 0);
    printf("%s ok\n", what);
}

int main(void) {
    child_or_report(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0), "userns");
    child_or_report(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0), "fork");
    fflush(stdout);
    return 0;
}
