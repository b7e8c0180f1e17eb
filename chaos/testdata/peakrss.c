/* peakrss FILE CMD ARGS...: runs CMD as a child (a real fork of this small process) and writes
 * the child's peak resident set size, the kernel's ru_maxrss in KiB from wait4, to FILE; then
 * ends as the child ended: its exit status, or the same signal.
 *
 * The chaos harness needs it because a Go program starts children with vfork (CLONE_VM): at the
 * child's exec the kernel records the parent's peak RSS as the child's, so ru_maxrss of a
 * process started by the (large) test process says at least the test process's own peak. Here
 * the child is forked from this process, which holds about a megabyte. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: peakrss FILE CMD [ARGS...]\n");
		return 125;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("peakrss: fork");
		return 125;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a timed-out case kills this wrapper: the child too */
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	int st;
	struct rusage ru;
	while (wait4(pid, &st, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("peakrss: wait4");
			return 125;
		}
	}
	FILE *f = fopen(argv[1], "w");
	if (f == NULL || fprintf(f, "%ld\n", ru.ru_maxrss) < 0 || fclose(f) != 0) {
		perror(argv[1]);
		return 125;
	}
	if (WIFSIGNALED(st)) {
		struct rlimit none = {0, 0};
		setrlimit(RLIMIT_CORE, &none);
		signal(WTERMSIG(st), SIG_DFL);
		raise(WTERMSIG(st));
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 125;
}
