/* rivulet: a BitTorrent engine. The one header a program includes. */
#ifndef RIVULET_H
#define RIVULET_H

#include "rivulet/dht.h"
#include "rivulet/error.h"
#include "rivulet/metainfo.h"
#include "rivulet/session.h"
#include "rivulet/tracker.h"
#include "rivulet/verify.h"
#include "rivulet/version.h"

#endif
