/* The benchmark's reference: a minimal multi-threaded libfcgi worker answering every request with
 * the same 5-byte body as bench-hello. Threads accept concurrently with no accept mutex, like the
 * Swift host. Usage: c-hello SOCKET_PATH THREADS */
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int listen_fd;
static const char response[] =
    "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello";

static void *serve(void *unused) {
    (void)unused;
    FCGX_Request *request = malloc(sizeof *request);
    char buffer[4096];
    FCGX_InitRequest(request, listen_fd, 0);
    while (FCGX_Accept_r(request) == 0) {
        while (FCGX_GetStr(buffer, sizeof buffer, request->in) > 0) {}
        FCGX_PutStr(response, sizeof response - 1, request->out);
        FCGX_Finish_r(request);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET_PATH THREADS\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[2]);
    FCGX_Init();
    /* libfcgi's own SIGTERM handler only sets a flag; let SIGTERM stop the process. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    umask(0117);
    listen_fd = FCGX_OpenSocket(argv[1], 1024);
    if (listen_fd < 0) {
        perror("FCGX_OpenSocket");
        return 1;
    }
    pthread_t *ids = calloc(threads, sizeof *ids);
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, serve, NULL);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    return 0;
}
