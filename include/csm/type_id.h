// Type identity for values that live in the global heap.
//
// Every root type given to Builder::New<T> or Get<T> needs a TypeInfo<T>: a stable
// 64-bit id made from a descriptive name, size, alignment and (for user structs) a user
// version and the member list. Get<T> of an object built as another type fails with
// TypeMismatch instead of reading garbage.
//
// Built in: fixed-size arithmetic types, bool, char, std::pair, std::array, and the csm
// containers (csm/containers.h). User structs are registered at global scope:
//
//   struct Trade { int64_t id; double price; csm::string venue; };
//   CSM_REGISTER_TYPE(Trade, 1, id, price, venue)
//
// Listing the members lets csm refuse, at compile time, any member that cannot live in
// the heap: std:: containers and strings (their allocator is process-local), std::pmr
// types, raw and function pointers (they may point into one process's binary), and
// anything with virtual functions (vtable pointers differ between processes).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace csm {

template <typename T>
inline constexpr bool kDependentFalse = false;

template <typename T, typename Enable = void>
struct TypeInfo {
  static_assert(kDependentFalse<T>,
                "this type cannot live in the csm global heap: register it with "
                "CSM_REGISTER_TYPE(Type, version, members...), and build it from csm:: "
                "containers (std::string, std::vector, std::map, std::pmr::* and pointers "
                "cannot be shared between processes)");
};

template <typename T>
struct TypeInfo<T*> {
  static_assert(kDependentFalse<T>,
                "raw and function pointers cannot live in the csm global heap: they may "
                "point into one process's binary or private memory; use csm containers");
};

namespace internal {
uint64_t TypeIdFromName(const std::string& descriptive_name);
std::string StructName(const char* name, uint32_t version, size_t size, size_t align,
                       const std::vector<std::pair<const char*, std::string>>& members);

template <typename T>
std::string SizedName(const char* base) {
  return std::string(base) + "@" + std::to_string(sizeof(T)) + "/" +
         std::to_string(alignof(T));
}
}  // namespace internal

// Id and name of a registered type; Id() is computed once per process.
template <typename T>
uint64_t TypeId() {
  static const uint64_t id = internal::TypeIdFromName(TypeInfo<T>::Name());
  return id;
}
template <typename T>
std::string TypeName() {
  return TypeInfo<T>::Name();
}

template <typename T>
struct TypeInfo<T, std::enable_if_t<std::is_arithmetic_v<T>>> {
  static std::string Name() {
    if constexpr (std::is_same_v<T, bool>) return "bool";
    else if constexpr (std::is_same_v<T, char>) return "char";
    else if constexpr (std::is_floating_point_v<T>) return "f" + std::to_string(sizeof(T) * 8);
    else if constexpr (std::is_signed_v<T>) return "i" + std::to_string(sizeof(T) * 8);
    else return "u" + std::to_string(sizeof(T) * 8);
  }
};

template <typename A, typename B>
struct TypeInfo<std::pair<A, B>> {
  static std::string Name() {
    return "pair<" + TypeInfo<std::remove_cv_t<A>>::Name() + "," +
           TypeInfo<std::remove_cv_t<B>>::Name() + ">";
  }
};

template <typename T, size_t N>
struct TypeInfo<std::array<T, N>> {
  static std::string Name() {
    return "array<" + TypeInfo<T>::Name() + "," + std::to_string(N) + ">";
  }
};

}  // namespace csm

// ---- CSM_REGISTER_TYPE --------------------------------------------------------------

#define CSM_INTERNAL_MEMBER(m) \
  {#m, ::csm::TypeInfo<std::remove_cv_t<decltype(Self::m)>>::Name()},
#define CSM_INTERNAL_FE_1(f, x) f(x)
#define CSM_INTERNAL_FE_2(f, x, ...) f(x) CSM_INTERNAL_FE_1(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_3(f, x, ...) f(x) CSM_INTERNAL_FE_2(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_4(f, x, ...) f(x) CSM_INTERNAL_FE_3(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_5(f, x, ...) f(x) CSM_INTERNAL_FE_4(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_6(f, x, ...) f(x) CSM_INTERNAL_FE_5(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_7(f, x, ...) f(x) CSM_INTERNAL_FE_6(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_8(f, x, ...) f(x) CSM_INTERNAL_FE_7(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_9(f, x, ...) f(x) CSM_INTERNAL_FE_8(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_10(f, x, ...) f(x) CSM_INTERNAL_FE_9(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_11(f, x, ...) f(x) CSM_INTERNAL_FE_10(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_12(f, x, ...) f(x) CSM_INTERNAL_FE_11(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_13(f, x, ...) f(x) CSM_INTERNAL_FE_12(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_14(f, x, ...) f(x) CSM_INTERNAL_FE_13(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_15(f, x, ...) f(x) CSM_INTERNAL_FE_14(f, __VA_ARGS__)
#define CSM_INTERNAL_FE_16(f, x, ...) f(x) CSM_INTERNAL_FE_15(f, __VA_ARGS__)
#define CSM_INTERNAL_PICK(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, \
                          _15, _16, NAME, ...)                                         \
  NAME
#define CSM_INTERNAL_FOR_EACH(f, ...)                                                     \
  CSM_INTERNAL_PICK(__VA_ARGS__, CSM_INTERNAL_FE_16, CSM_INTERNAL_FE_15,                \
                    CSM_INTERNAL_FE_14, CSM_INTERNAL_FE_13, CSM_INTERNAL_FE_12,         \
                    CSM_INTERNAL_FE_11, CSM_INTERNAL_FE_10, CSM_INTERNAL_FE_9,          \
                    CSM_INTERNAL_FE_8, CSM_INTERNAL_FE_7, CSM_INTERNAL_FE_6,            \
                    CSM_INTERNAL_FE_5, CSM_INTERNAL_FE_4, CSM_INTERNAL_FE_3,            \
                    CSM_INTERNAL_FE_2, CSM_INTERNAL_FE_1)(f, __VA_ARGS__)

// Registers a user struct (at global scope) with a user version and all of its data
// members (up to 16). Bump the version when the meaning of a member changes.
#define CSM_REGISTER_TYPE(Type, version, ...)                                            \
  template <>                                                                            \
  struct csm::TypeInfo<Type> {                                                           \
    using Self = Type;                                                                   \
    static_assert(!std::is_polymorphic_v<Type>,                                          \
                  #Type " has virtual functions: vtable pointers differ between "        \
                  "processes, so it cannot live in the csm global heap");               \
    static std::string Name() {                                                          \
      return ::csm::internal::StructName(#Type, version, sizeof(Type), alignof(Type),   \
                                         {CSM_INTERNAL_FOR_EACH(CSM_INTERNAL_MEMBER,     \
                                                                __VA_ARGS__)});          \
    }                                                                                    \
  };
