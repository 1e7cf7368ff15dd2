/* Download a torrent into a folder with rivulet's library API.
 * Build: cmake --build build --target example_download; run: build/example_download T.torrent DIR */
#include <signal.h>
#include <stdio.h>

#include <rivulet/rivulet.h>

int main(int argc, char **argv)
{
    rv_session_t *s;
    rv_error_t err;
    signal(SIGPIPE, SIG_IGN); /* a peer hanging up is an error on its connection, not our end */
    if (argc != 3 || rv_session_new(NULL, NULL, &s) != 0)
        return 2;
    if (rv_session_add(s, argv[1], &(rv_add_opts_t){.save_dir = argv[2]}, NULL, &err) != 0) {
        fprintf(stderr, "%s: %s\n", argv[1], err.msg);
        return 3;
    }
    int rc = rv_session_run(s); /* returns once the torrent is complete (or failed) */
    rv_session_free(s);
    return rc == 0 ? 0 : 1;
}
