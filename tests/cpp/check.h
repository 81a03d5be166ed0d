// A minimal test harness for the torch-free C++ tests (no third-party framework needed).
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace bftest {

struct Case {
  const char* name;
  std::function<void()> fn;
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

inline int& failures() {
  static int count = 0;
  return count;
}

struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

inline int run_all() {
  for (const auto& c : registry()) {
    const int before = failures();
    c.fn();
    std::printf("%s %s\n", failures() == before ? "[ OK ]" : "[FAIL]", c.name);
  }
  std::printf("%zu tests, %d failed checks\n", registry().size(), failures());
  return failures() == 0 ? 0 : 1;
}

}  // namespace bftest

#define BF_TEST(name)                                                  \
  static void name();                                                  \
  static bftest::Register name##_registration(#name, name);            \
  static void name()

#define BF_CHECK(cond)                                                                  \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::printf("  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);            \
      ++bftest::failures();                                                             \
    }                                                                                   \
  } while (0)

#define BF_CHECK_NEAR(a, b, tol)                                                                          \
  do {                                                                                                    \
    const double va_ = (a), vb_ = (b);                                                                    \
    if (!(std::fabs(va_ - vb_) <= (tol))) {                                                               \
      std::printf("  %s:%d: %s = %.9g vs %s = %.9g (tol %g)\n", __FILE__, __LINE__, #a, va_, #b, vb_, (double)(tol)); \
      ++bftest::failures();                                                                               \
    }                                                                                                     \
  } while (0)

#define BF_TEST_MAIN() \
  int main() { return bftest::run_all(); }
