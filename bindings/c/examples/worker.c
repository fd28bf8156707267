/* Serves the types named on the command line until SIGTERM or SIGINT. Each
 * reply is {"processed":true,"by":"c","type":T,"bytes":N} (never the payload
 * itself); types given with --fail fail for good, so they go to the DLQ.
 * Prints "ready" once every type is registered.
 *
 *   perfq-c-worker --queue Q [--fail TYPE]... TYPE...
 */
#include <perfq/perfq.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static perfq_worker* g_worker;

static void on_signal(int sig) {
  (void)sig;
  perfq_worker_stop(g_worker);
}

static void serve(void* user, const perfq_job* job, perfq_reply* reply) {
  (void)user;
  char body[160];
  int n = snprintf(body, sizeof body,
                   "{\"processed\":true,\"by\":\"c\",\"type\":\"%.*s\",\"bytes\":%zu}",
                   (int)job->type_len, job->type, job->payload_len);
  perfq_reply_ok(reply, body, (size_t)n);
}

static void refuse(void* user, const perfq_job* job, perfq_reply* reply) {
  (void)user;
  (void)job;
  perfq_reply_permanent_error(reply, "rejected by example");
}

int main(int argc, char** argv) {
  const char* queue = NULL;
  for (int i = 1; i + 1 < argc; ++i) {
    if (strcmp(argv[i], "--queue") == 0) queue = argv[i + 1];
  }
  if (queue == NULL) {
    fputs("usage: perfq-c-worker --queue Q [--fail TYPE]... TYPE...\n", stderr);
    return 2;
  }
  perfq_errc rc = perfq_worker_open(queue, NULL, &g_worker);
  if (rc != PERFQ_OK) {
    fprintf(stderr, "worker: %s: %s\n", perfq_errc_name(rc), perfq_last_error());
    return 1;
  }
  int types = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--queue") == 0) {
      ++i;
      continue;
    }
    int failing = strcmp(argv[i], "--fail") == 0 && i + 1 < argc;
    if (failing) ++i;
    rc = perfq_worker_register(g_worker, argv[i], failing ? refuse : serve, NULL);
    if (rc != PERFQ_OK) {
      fprintf(stderr, "worker: %s: %s\n", perfq_errc_name(rc), perfq_last_error());
      perfq_worker_close(g_worker);
      return 1;
    }
    ++types;
  }
  if (types == 0) {
    fputs("usage: perfq-c-worker --queue Q [--fail TYPE]... TYPE...\n", stderr);
    perfq_worker_close(g_worker);
    return 2;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  printf("ready\n");
  fflush(stdout);
  rc = perfq_worker_run(g_worker);
  perfq_worker_close(g_worker);
  return rc == PERFQ_OK ? 0 : 1;
}
