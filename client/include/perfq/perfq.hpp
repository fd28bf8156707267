#pragma once
// perfq C++ client library: submit requests, await their outcomes, and
// process requests as a worker. See README.md for a tour.
#include "perfq/client/completion_pump.hpp"
#include "perfq/client/events.hpp"
#include "perfq/client/producer.hpp"
#include "perfq/client/worker.hpp"
#include "perfq/core/errc.hpp"
#include "perfq/core/request.hpp"
#include "perfq/core/result.hpp"
